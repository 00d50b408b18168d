"""The Accelerate GAN trainer of DAC: `accelerate launch training/train.py --config training/configs/<name>.yaml`."""
