"""Scale-out: data-parallel ranks (`parallel.py`) and their launcher (`launch.py`)."""
