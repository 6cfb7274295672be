"""SGLD maths and the push-pull controller (a torch optimizer over DeviceArrays)."""
