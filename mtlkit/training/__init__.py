"""The trainer's collaborators; :class:`mtlkit.trainer.Trainer` runs the loop with them.

=============== ==========================================================================
module          what it owns
=============== ==========================================================================
``config``      :class:`~mtlkit.training.config.TrainConfig`: every knob, validated
``device``      the device/AMP policy: where tensors go, autocast, channels-last
``optim``       the optimizer and learning-rate scheduler a config names
``batches``     resumable batch streams, the support/query split, one step's batch
``evaluation``  evaluation on a split and model selection on the validation split
``health``      one transfer of a step's numbers to the host; a diverged step's message
``runlog``      the step and epoch logs, the progress bar, the records and summary files
=============== ==========================================================================

They import nothing above them (the trainer, experiments, notebook helpers); see the
README's *Architecture* section.
"""
