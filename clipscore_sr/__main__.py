"""``python -m clipscore_sr`` == ``srmetrics`` (handy under ``torchrun -m``)."""

from .cli import main

if __name__ == "__main__":
    main()
