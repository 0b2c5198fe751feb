"""Training and inference data formats built on the shards: play arrays and splits
(`plays`), item content as model inputs (`content`)."""
