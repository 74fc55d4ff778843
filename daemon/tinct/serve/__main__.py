"""`python -m tinct.serve`: tinctd."""
import sys

from .main import main

sys.exit(main())
