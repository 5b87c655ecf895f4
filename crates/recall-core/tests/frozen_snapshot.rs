//! Snapshots from a frozen view: what `freeze` then `flatten` gives is the set exactly as it was
//! when frozen, however the set changes while the snapshot is being made, and it serialises to
//! the same bytes as `snapshot()` did; handing the merged layer back (`settle`) changes nothing
//! the set holds and keeps it at most two frozen layers deep. A set that freezes stays equal to
//! one that never does, command after command.

mod ops;

use ops::{command, op};
use proptest::collection::vec;
use proptest::prelude::*;
use recall_core::{FingerprintSeed, Frozen, RevocationSet, SetSnapshot};

const SEED: FingerprintSeed = FingerprintSeed(11);

fn finish(
    set: &mut RevocationSet,
    expected: &SetSnapshot,
    frozen: Frozen,
) -> Result<(), TestCaseError> {
    let flat = frozen.flatten();
    let taken = flat.snapshot();
    prop_assert_eq!(&taken.to_owned(), expected);
    prop_assert_eq!(
        serde_json::to_string(&taken).expect("serialises"),
        serde_json::to_string(expected).expect("serialises")
    );
    prop_assert!(set.settle(&flat), "the set still holds the layers it froze");
    prop_assert!(set.frozen_layers() <= 2);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn a_frozen_view_is_the_set_as_it_was_and_settling_it_changes_nothing(
        ops in vec(op(), 1..80),
        moves in vec(0u8..4, 80),
    ) {
        let mut layered = RevocationSet::new(SEED);
        let mut plain = RevocationSet::new(SEED);
        let mut pending: Option<(SetSnapshot, Frozen)> = None;
        for ((op, version), step) in ops.iter().zip(1u64..).zip(moves) {
            let cmd = command(op);
            let a = layered.apply(version, &cmd).expect("in order");
            let b = plain.apply(version, &cmd).expect("in order");
            prop_assert_eq!(a, b);
            match (step, pending.take()) {
                (0, None) => pending = Some((layered.snapshot(), layered.freeze())),
                (1, Some((expected, frozen))) => finish(&mut layered, &expected, frozen)?,
                (_, p) => pending = p,
            }
            prop_assert!(layered.frozen_layers() <= 3);
            prop_assert_eq!(&layered, &plain);
            prop_assert_eq!(layered.view(), plain.view());
            prop_assert_eq!(layered.snapshot(), plain.snapshot());
        }
        if let Some((expected, frozen)) = pending {
            finish(&mut layered, &expected, frozen)?;
        }
        prop_assert_eq!(&layered, &plain);
    }
}

#[test]
fn settling_after_the_set_was_replaced_changes_nothing() {
    let mut set = RevocationSet::new(SEED);
    set.apply(1, &command(&ops::Op::Revoke(vec![(1, Some(5)), (2, None)])))
        .expect("in order");
    drop(set.freeze());
    set.apply(2, &command(&ops::Op::Revoke(vec![(3, None)])))
        .expect("in order");
    let flat = set.freeze().flatten();
    assert_eq!(set.frozen_layers(), 2);
    let mut replaced = RevocationSet::restore(set.snapshot()).expect("restores");
    assert!(
        !replaced.settle(&flat),
        "the restored set never held those layers"
    );
    assert_eq!(replaced, set);
    assert!(set.settle(&flat));
    assert_eq!(set.frozen_layers(), 1, "both layers merged into one");
    assert_eq!(replaced, set);
}
