"""edgecam: on-camera TFLite inference for Raspberry Pi-class devices, published over MQTT."""

__version__ = "0.1.0"
