#![allow(clippy::unwrap_used, clippy::float_cmp)]

use std::sync::Mutex;

use super::*;

fn inputs(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("text {i}")).collect()
}

/// An answer for `batch`: each vector is `[i, 1]` for input `text {i}`.
fn answer(batch: &[String]) -> Embeddings {
    Embeddings {
        vectors: batch
            .iter()
            .map(|t| {
                let i: f32 = t.trim_start_matches("text ").parse().unwrap();
                vec![i, 1.0]
            })
            .collect(),
        model: "m".into(),
        usage: Usage {
            input_tokens: batch.len() as u64,
            ..Usage::default()
        },
    }
}

#[test]
fn cosine_of_known_vectors() {
    assert!((cosine(&[1.0, 0.0], &[1.0, 0.0]) - 1.0).abs() < 1e-6);
    assert!(cosine(&[1.0, 0.0], &[0.0, 3.0]).abs() < 1e-6);
    assert!((cosine(&[1.0, 2.0], &[-2.0, -4.0]) + 1.0).abs() < 1e-6);
    let c = cosine(&[1.0, 1.0], &[1.0, 0.0]);
    assert!((c - std::f32::consts::FRAC_1_SQRT_2).abs() < 1e-6, "{c}");
    // Scale does not matter.
    assert!((cosine(&[3.0, 4.0], &[300.0, 400.0]) - 1.0).abs() < 1e-6);
}

#[test]
fn cosine_is_zero_when_undefined() {
    assert_eq!(cosine(&[], &[]), 0.0);
    assert_eq!(cosine(&[1.0, 2.0], &[1.0]), 0.0);
    assert_eq!(cosine(&[0.0, 0.0], &[1.0, 2.0]), 0.0);
    assert_eq!(cosine(&[f32::NAN, 1.0], &[1.0, 2.0]), 0.0);
    assert_eq!(cosine(&[f32::INFINITY, 1.0], &[1.0, 2.0]), 0.0);
    // Large components do not overflow into a wrong answer.
    assert!((cosine(&[3e38, 3e38], &[3e38, 3e38]) - 1.0).abs() < 1e-6);
}

#[test]
fn normalize_makes_unit_vectors_and_leaves_zeros() {
    let mut v = vec![3.0, 4.0];
    normalize(&mut v);
    assert!(
        (v[0] - 0.6).abs() < 1e-6 && (v[1] - 0.8).abs() < 1e-6,
        "{v:?}"
    );
    let mut zero = vec![0.0; 3];
    normalize(&mut zero);
    assert_eq!(zero, vec![0.0; 3]);
    let mut empty: Vec<f32> = Vec::new();
    normalize(&mut empty);
    assert!(empty.is_empty());
    let mut bad = vec![f32::NAN, 1.0];
    normalize(&mut bad);
    assert!(bad[0].is_nan() && bad[1] == 1.0);
}

#[tokio::test]
async fn batches_keep_input_order_and_sum_usage() {
    let common = Common::new(
        EmbedLimits {
            batch_size: 3,
            ..EmbedLimits::default()
        },
        100,
        None,
    );
    let sizes = Mutex::new(Vec::new());
    let all = inputs(8);
    let got = common
        .embed(&all, |batch| {
            sizes.lock().unwrap().push(batch.len());
            async move { Ok(answer(batch)) }
        })
        .await
        .unwrap();
    assert_eq!(*sizes.lock().unwrap(), vec![3, 3, 2]);
    let firsts: Vec<f32> = got.vectors.iter().map(|v| v[0]).collect();
    assert_eq!(firsts, vec![0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0]);
    assert_eq!(got.usage.input_tokens, 8);
    assert_eq!(got.model, "m");
}

#[tokio::test]
async fn no_inputs_means_no_call() {
    let common = Common::new(EmbedLimits::default(), 100, None);
    let got = common
        .embed(&[], |_| async { panic!("called") })
        .await
        .unwrap();
    assert!(got.is_empty());
}

#[tokio::test]
async fn batch_size_stays_within_one_and_the_provider_limit() {
    let zero = Common::new(
        EmbedLimits {
            batch_size: 0,
            ..EmbedLimits::default()
        },
        100,
        None,
    );
    assert_eq!(zero.limits.batch_size, 1);
    let huge = Common::new(
        EmbedLimits {
            batch_size: 5000,
            ..EmbedLimits::default()
        },
        100,
        None,
    );
    assert_eq!(huge.limits.batch_size, 100);
}

#[tokio::test]
async fn long_inputs_are_refused_before_sending_and_empty_ones_are_not() {
    let common = Common::new(
        EmbedLimits {
            max_input_bytes: 10,
            ..EmbedLimits::default()
        },
        100,
        None,
    );
    let err = common
        .embed(&["short".into(), "x".repeat(11)], |_| async {
            panic!("sent")
        })
        .await
        .unwrap_err();
    let LlmError::BadRequest { message, .. } = &err else {
        panic!("{err:?}")
    };
    assert!(message.contains("input 1 is 11 bytes"), "{message}");
    assert!(!err.is_retryable());

    let got = common
        .embed(&[String::new()], |batch| async move {
            assert_eq!(batch, [String::new()]);
            Ok(Embeddings {
                vectors: vec![vec![0.5]],
                ..Embeddings::default()
            })
        })
        .await
        .unwrap();
    assert_eq!(got.vectors, vec![vec![0.5]]);
}

#[test]
fn answers_are_checked() {
    let common = Common::new(EmbedLimits::default(), 100, None);
    let malformed = |r: Result<(), LlmError>| matches!(r, Err(LlmError::Malformed(_)));
    assert!(malformed(common.check(&[vec![1.0]], 2)), "too few");
    assert!(
        malformed(common.check(&[vec![1.0], vec![1.0]], 1)),
        "too many"
    );
    assert!(malformed(common.check(&[vec![]], 1)), "empty vector");
    assert!(
        malformed(common.check(&[vec![1.0, 2.0], vec![1.0]], 2)),
        "ragged"
    );
    assert!(
        malformed(common.check(&[vec![1.0, f32::INFINITY]], 1)),
        "infinite"
    );
    assert!(malformed(common.check(&[vec![f32::NAN, 1.0]], 1)), "NaN");
    assert_eq!(
        common.dimensions(),
        None,
        "nothing learnt from refused answers"
    );
    common.check(&[vec![1.0, 2.0]], 1).unwrap();
    assert_eq!(common.dimensions(), Some(2));
    assert!(
        malformed(common.check(&[vec![1.0, 2.0, 3.0]], 1)),
        "another length than the first answer's"
    );

    let configured = Common::new(EmbedLimits::default(), 100, Some(3));
    assert!(malformed(configured.check(&[vec![1.0, 2.0]], 1)));
    configured.check(&[vec![1.0, 2.0, 3.0]], 1).unwrap();
}

#[tokio::test]
async fn batches_of_different_lengths_or_counts_are_refused() {
    let mut done = Embeddings::default();
    let all = inputs(4);
    let mut calls = 0;
    let err = fill(&all, 2, &mut done, |batch| {
        calls += 1;
        let dims = if calls == 1 { 2 } else { 3 };
        async move {
            Ok(Embeddings {
                vectors: vec![vec![1.0; dims]; batch.len()],
                ..Embeddings::default()
            })
        }
    })
    .await
    .unwrap_err();
    assert!(matches!(err, LlmError::Malformed(_)), "{err:?}");
    assert_eq!(done.len(), 2, "the first batch is kept");

    let mut done = Embeddings::default();
    let err = fill(&all, 2, &mut done, |_| async {
        Ok(Embeddings {
            vectors: vec![vec![1.0]],
            ..Embeddings::default()
        })
    })
    .await
    .unwrap_err();
    assert!(matches!(err, LlmError::Malformed(_)), "{err:?}");
}
