"""The int4 weights' group size is read from the IR, so the CPU quantizes activations in the same groups."""

from __future__ import annotations

from phi3ov.models.resolve import weight_group_size

LAYER = '<layer id="{n}" type="Const"><data element_type="{t}" shape="{shape}" offset="0" size="8" /></layer>\n'


def ir(tmp_path, *consts: tuple[str, str]) -> None:
    body = "".join(LAYER.format(n=n, t=t, shape=shape) for n, (t, shape) in enumerate(consts))
    (tmp_path / "openvino_model.xml").write_text(f'<net name="m" version="11"><layers>\n{body}</layers></net>\n')


def test_the_group_is_the_last_dimension_of_grouped_int4_weights(tmp_path):
    ir(tmp_path, ("i4", "9216, 24, 128"), ("f16", "9216, 24, 1"), ("i4", "3072, 64, 128"))
    assert weight_group_size(tmp_path) == 128


def test_zero_points_are_not_groups_and_the_smallest_group_wins(tmp_path):
    """u4 zero points are [rows, groups, 1]; a width the export's group does not divide gets a smaller one."""
    ir(tmp_path, ("u4", "576, 18, 32"), ("u4", "576, 18, 1"), ("u4", "1536, 12, 128"))
    assert weight_group_size(tmp_path) == 32


def test_per_channel_or_int8_weights_have_no_group(tmp_path):
    ir(tmp_path, ("i4", "3072, 3072"), ("u8", "32064, 3072"))
    assert weight_group_size(tmp_path) is None
    assert weight_group_size(tmp_path / "missing") is None
