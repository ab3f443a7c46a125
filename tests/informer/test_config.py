"""InformerConfig's error messages: one readable line per problem."""

from __future__ import annotations

import pytest
from pydantic import BaseModel, ValidationError, field_validator

from informer_nas.informer.config import format_validation_error


class Window(BaseModel):
    seq_len: int
    label_len: int

    @field_validator("seq_len")
    @classmethod
    def _even(cls, value: int) -> int:
        if value % 2:
            raise ValueError(f"must be even, got {value}; e.g. {value + 1}")
        return value

    @field_validator("label_len")
    @classmethod
    def _positive(cls, value: int) -> int:
        if value <= 0:  # as an `assert` would (pytest rewrites the asserts of a test module)
            raise AssertionError("must be > 0; e.g. 12")
        return value


@pytest.mark.parametrize(("data", "message"), [
    # a ValueError in a validator: its words, without pydantic's "Value error, "
    ({"seq_len": 7, "label_len": 4}, "seq_len: must be even, got 7; e.g. 8 (got 7)"),
    # an assert in a validator: its words, without pydantic's "Assertion failed, "
    ({"seq_len": 8, "label_len": 0}, "label_len: must be > 0; e.g. 12 (got 0)"),
], ids=["value-error", "assertion"])
def test_a_validator_message_reads_as_written(data: dict[str, int], message: str) -> None:
    with pytest.raises(ValidationError) as caught:
        Window.model_validate(data)
    assert format_validation_error(caught.value) == message

