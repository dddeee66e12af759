"""The trainer's settings are checked against what it has when it starts: algorithms (the
served one, those whose half-life it learns) and the gate's metric."""

from __future__ import annotations

import pytest

from streamrec_trainer.app import create_app
from streamrec_trainer.pipeline import check_settings
from streamrec_trainer.settings import TrainerSettings, TrainingSettings


def test_the_trainer_refuses_to_start_with_an_algorithm_or_metric_it_does_not_have() -> None:
    check_settings(TrainingSettings())  # the defaults name real algorithms and metrics
    check_settings(
        TrainingSettings(
            half_life_algorithms=["itemknn", "als"], served_algorithm="ease", main_metric="hr@10"
        )
    )
    with pytest.raises(ValueError, match=r"training\.half_life_algorithms: 'itemnn' not trained"):
        create_app(TrainerSettings(training=TrainingSettings(half_life_algorithms=["itemnn"])))
    # hybrid is served and evaluated, but not fitted with a half-life of its own
    with pytest.raises(ValueError, match=r"half_life_algorithms: 'hybrid' not trained"):
        check_settings(TrainingSettings(half_life_algorithms=["hybrid"]))
    with pytest.raises(ValueError, match=r"training\.served_algorithm: 'alss' is not an algorithm"):
        create_app(TrainerSettings(training=TrainingSettings(served_algorithm="alss")))
    # a metric the holdout does not report gated on no figure ("insufficient evidence")
    for metric in ("ndcg20", "ndcg@50", "auc@20"):
        with pytest.raises(
            ValueError, match=rf"training\.main_metric: '{metric}' is not evaluated"
        ):
            check_settings(TrainingSettings(main_metric=metric))
