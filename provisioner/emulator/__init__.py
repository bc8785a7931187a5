"""The AWS emulator of the local engine: moto's server, the applier, the Lambda runtime.

Arrows run engines → emulator → stacks: nothing here imports `provisioner.engines`.
"""

from typing import Final

# moto's account: every emulated resource lives in it (moto's default, never configured).
MOTO_ACCOUNT_ID: Final = "123456789012"
