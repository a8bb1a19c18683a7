import sys

from tfcodec.eval import main

sys.exit(main())
