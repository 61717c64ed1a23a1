import sys

from ml.data.synth.export import main

sys.exit(main())
