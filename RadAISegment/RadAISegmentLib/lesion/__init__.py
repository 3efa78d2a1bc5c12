"""The promptable lesion model (``lesion-roi``): crop around a click (:mod:`.preprocess`), predict
(:mod:`.predict`), synthetic training data (:mod:`.synthetic`), training (:mod:`.train`), the classical
baseline (:mod:`.baseline`) and evaluation on real tumours (:mod:`.evaluate`)."""
