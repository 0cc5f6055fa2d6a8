//! Which layers train, by Keras layer name: `--trainable block5` trains block5_conv1..3 and
//! the head; everything before is a frozen prefix that gets no gradient and no backward work.

use serde::{Deserialize, Serialize};

use super::architecture::CONV_LAYER_NAMES;

/// Index of the first trainable convolution (13 = only the head trains).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct TrainableFrom(usize);

#[derive(Debug, thiserror::Error, PartialEq)]
#[error(
    "unknown layer '{0}' for --trainable: use all, head, block1..block5, or a layer such as block5_conv2"
)]
pub struct UnknownLayer(pub String);

impl TrainableFrom {
    pub const REFERENCE: TrainableFrom = TrainableFrom(10);

    pub fn first_conv(self) -> usize {
        self.0
    }

    pub fn is_trainable(self, conv_index: usize) -> bool {
        conv_index >= self.0
    }

    /// The layer name as given on the command line.
    pub fn name(self) -> String {
        match self.0 {
            0 => "all".into(),
            13 => "head".into(),
            i if CONV_LAYER_NAMES[i].ends_with("_conv1") => CONV_LAYER_NAMES[i][..6].to_string(),
            i => CONV_LAYER_NAMES[i].to_string(),
        }
    }
}

impl std::str::FromStr for TrainableFrom {
    type Err = UnknownLayer;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        match s {
            "all" => return Ok(TrainableFrom(0)),
            "head" | "none" => return Ok(TrainableFrom(13)),
            _ => {}
        }
        CONV_LAYER_NAMES
            .iter()
            .position(|n| *n == s || (n.starts_with(s) && s.len() == 6 && n.ends_with("_conv1")))
            .map(TrainableFrom)
            .ok_or_else(|| UnknownLayer(s.to_string()))
    }
}

impl Default for TrainableFrom {
    fn default() -> Self {
        TrainableFrom::REFERENCE
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_blocks_layers_and_extremes() {
        assert_eq!("block5".parse::<TrainableFrom>().unwrap().first_conv(), 10);
        assert_eq!(
            "block4_conv2"
                .parse::<TrainableFrom>()
                .unwrap()
                .first_conv(),
            8
        );
        assert_eq!("all".parse::<TrainableFrom>().unwrap().first_conv(), 0);
        assert_eq!("head".parse::<TrainableFrom>().unwrap().first_conv(), 13);
        assert_eq!(
            "block6".parse::<TrainableFrom>(),
            Err(UnknownLayer("block6".into()))
        );
        assert_eq!(TrainableFrom(10).name(), "block5");
        assert_eq!(TrainableFrom(8).name(), "block4_conv2");
    }
}
