"""Home Assistant's own MQTT discovery code, run over captured edgecam traffic (validate.py).

These modules run inside a separate venv that has the `homeassistant` package (Python 3.13;
see tests/support/hass_venv.py), never in the project's venv.
"""
