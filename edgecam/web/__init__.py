"""The built-in web page (live view, zone editor, events, health) and Prometheus `/metrics`.

`edgecam.web.app.open_web` is the one entry point `edgecam run` calls; see the README's
"Web page" section.
"""
