"""The MBC model, its meta-training (`mbc train`) and online-adaptation evaluation (`mbc eval`)."""
