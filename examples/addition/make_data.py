"""Write the addition task's files next to this script (the same generator `rftkit demo` uses).

    python examples/addition/make_data.py [--digits 2] [--train 1000] [--valid 200] [--sft 500] [--seed 0]
"""

import argparse
from pathlib import Path

from rftkit.data.builtin import write_addition

parser = argparse.ArgumentParser(description=__doc__)
parser.add_argument("--digits", type=int, default=2)
parser.add_argument("--train", type=int, default=1000)
parser.add_argument("--valid", type=int, default=200)
parser.add_argument("--sft", type=int, default=500)
parser.add_argument("--seed", type=int, default=0)
args = parser.parse_args()
files = write_addition(Path(__file__).parent, digits=args.digits, train=args.train, valid=args.valid, sft=args.sft, seed=args.seed)
for name, path in files.items():
    print(f"{name}: {path}")
