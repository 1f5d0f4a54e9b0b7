"""serve-api's conversions between Tinker's wire format and rlreason's records, checked against the tinker SDK's own
generated protobuf classes (no server, no model)."""

import math

import numpy as np
import pytest

from rlreason.api import APIError
from rlreason.api import tinker_types as tt

pb = pytest.importorskip("tinker.proto.tinker_public_pb2", reason="the tinker SDK (pip install rlreason[api])")


def test_a_tinker_datum_becomes_a_sequence_with_its_targets_shifted_by_one():
    # model_input = tokens[:-1], target_tokens = tokens[1:], inputs aligned with the targets
    datum = tt.to_datum(0, [5, 6, 7], {"target_tokens": np.array([6, 7, 9]), "advantages": np.array([0.0, 1.0, 1.0]),
                                       "logprobs": np.array([0.0, -0.5, -0.25])}, "importance_sampling")
    assert datum.tokens == [5, 6, 7, 9]
    assert datum.targets["advantages"] == [0.0, 0.0, 1.0, 1.0]
    assert datum.targets["logprobs"] == [0.0, 0.0, -0.5, -0.25]
    assert datum.targets["mask"] == [0.0, 0.0, 1.0, 1.0]  # where some input is non-zero
    # no inputs at all (cross_entropy on every target): every target trains
    plain = tt.to_datum(0, [5, 6, 7], {"target_tokens": np.array([6, 7, 9])}, "cross_entropy")
    assert plain.targets["mask"] == [0.0, 1.0, 1.0, 1.0]
    # a prompt's targets may be padding (0) where every input is 0; a trained target must be the next token
    tt.to_datum(0, [5, 6, 7], {"target_tokens": np.array([0, 7, 9]), "weights": np.array([0.0, 1.0, 1.0])}, "x")
    with pytest.raises(APIError, match="target_tokens.1. is 8 but model_input.2. is 7"):
        tt.to_datum(0, [5, 6, 7], {"target_tokens": np.array([6, 8, 9]), "weights": np.ones(3)}, "cross_entropy")


def test_the_wire_format_is_what_the_tinker_sdk_reads_and_writes():
    out = pb.ForwardBackwardOutput()
    out.ParseFromString(tt.encode_forward_backward_output([[-1.0, -2.0], [-3.0]], {"loss:sum": 6.0}))
    assert dict(out.metrics) == {"loss:sum": 6.0} and out.loss_fn_outputs[0].num_datums == 2
    sample = pb.SampleResponse()
    sample.ParseFromString(tt.encode_sample_response([([1, 2], [-0.5, -0.25], "length"), ([3], [-1.0], "stop")],
                                                     [math.nan, -1.0]))
    assert [np.frombuffer(s.tokens, np.int32).tolist() for s in sample.sequences] == [[1, 2], [3]]
    assert np.frombuffer(sample.prompt_logprobs, np.float32)[1] == -1.0
    request = pb.ForwardBackwardRequest(model_id="m", seq_id=3, loss_fn="ppo", forward_only=True)
    request.loss_fn_config["clip_low_threshold"] = 0.7
    datum = request.data.add()
    datum.model_input.add().encoded_text.tokens = np.array([5, 6, 7], np.int32).tobytes()
    target = datum.loss_fn_inputs["target_tokens"]
    target.dtype, target.dense = pb.DTYPE_INT64, np.array([6, 7, 9], np.int64).tobytes()
    target.shape.extend([3])
    decoded = tt.decode_forward_backward(request.SerializeToString())
    assert (decoded.model_id, decoded.loss_fn, decoded.forward_only) == ("m", "ppo", True)
    assert decoded.loss_config == {"clip_low_threshold": pytest.approx(0.7)}
    assert decoded.data[0][0] == [5, 6, 7] and decoded.data[0][1]["target_tokens"].tolist() == [6, 7, 9]
