"""The bottom layer: errors, value types with units, the DeviceArray protocol."""
