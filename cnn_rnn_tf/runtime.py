"""Process set-up shared by the binaries: logical CPU devices and logging.

    runtime.configure(cpu_devices=2)   # before any TensorFlow op runs
"""

import tensorflow as tf


def configure(cpu_devices: int = 0) -> None:
  """Splits the CPU into `cpu_devices` logical devices (0 or 1: leave it whole)."""
  if cpu_devices and cpu_devices > 1:
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration()] * cpu_devices)
