"""HomeKit Accessory Protocol side: the camera accessory on HAP-python."""
