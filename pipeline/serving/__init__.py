"""Serving the trained mixed-signal system: images in, classes and per-class scores out.

  images     reading images from a .npy array, an IDX file or a folder of PNG/JPEG files,
             and the one rule that turns them into what training fed the encoder
  system     MixedSignalSystem: the encoder, the analog block and its chips, loaded by the
             project's own loaders, classifying batches of images
  bundle     which folders of a run make a system, and its system.json
  mlflow_model  logging the system as an MLflow pyfunc model (models from code, no pickle)
  model_code    the file MLflow runs to load that model

Nothing here imports the `mixsig` command line, so `mlflow.pyfunc.load_model` and
`mlflow models serve` need only the project's packages.
"""
