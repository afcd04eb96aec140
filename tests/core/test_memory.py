import sys

from guard.core import memory


def test_freed_memory_can_be_given_back_on_linux():
    """glibc's malloc_trim is found and called on Linux (CI); elsewhere it is a no-op."""
    blocks = [bytearray(64 * 1024) for _ in range(200)]  # freed below: something to give back
    del blocks
    assert memory.give_back() is sys.platform.startswith("linux")
