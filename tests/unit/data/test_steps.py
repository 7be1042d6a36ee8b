"""`OfflineSource`: the order of an epoch's micro-batches is a function of the seed and the step."""

from posttrain.data.steps import OfflineSource


def test_offline_source_order_is_a_function_of_seed_and_step():
    items = list(range(20))
    source = OfflineSource(items, lambda rows: rows, batch_size=2, gradient_accumulation_steps=2, seed=3)
    assert source.steps_per_epoch == 5
    first_epoch = [x for s in range(5) for mb in source.next_step(s) for x in mb]
    assert sorted(first_epoch) == items
    again = OfflineSource(items, lambda rows: rows, batch_size=2, gradient_accumulation_steps=2, seed=3)
    assert again.next_step(7) == source.next_step(7) and source.next_step(5) != source.next_step(0)
