"""The AWS emulator of the local engine: moto's server, the applier, the Lambda runtime.

Arrows run engines → emulator → stacks: nothing here imports the engines package; the applier
reports progress in its own type (`apply.progress`) and the local engine translates it.
"""

from typing import Final

# moto's account: every emulated resource lives in it (moto's default, never configured).
MOTO_ACCOUNT_ID: Final = "123456789012"
# Where moto serves its own API (reset, state dumps, its dashboard), beside the AWS APIs.
MOTO_API_PATH: Final = "/moto-api/"
