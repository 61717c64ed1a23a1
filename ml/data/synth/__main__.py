import sys

from ml.data.synth import main

sys.exit(main())
