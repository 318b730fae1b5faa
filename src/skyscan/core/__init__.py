"""What every stage uses: the error hierarchy, atomic writes, the command base, the case layer.

``skyscan.core`` imports nothing else of skyscan; every other package may import it.
"""
