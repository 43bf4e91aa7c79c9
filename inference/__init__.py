"""Method-agnostic drivers: the Refiner API, the folder runner (eval.py, refine.py --dir, eval.py --ade,
validation, the learning benchmark), object windows and panels."""
from inference.predict import refine_image
from inference.refiner import Refiner

__all__ = ['Refiner', 'refine_image']
