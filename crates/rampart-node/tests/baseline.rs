//! The dissemination bench's baselines (`rampart_node::baseline`): the
//! plain push, and the floor where each swarm also does the work no node
//! can skip. Small frames, a few rounds.

use std::time::Duration;

use rampart_node::{
    JobId, LinearRegression, PayloadKind, SignedPayload, TestNet, Trainer, TrainerError, baseline,
};

const DIM: usize = 1000;
const TIMEOUT: Duration = Duration::from_secs(30);

/// A node's push frame of DIM values.
fn frame() -> Vec<u8> {
    let values: Vec<f32> = (0..DIM).map(|i| i as f32 * 1e-3).collect();
    let (_, frame) = SignedPayload::push_f32(
        &TestNet::key(0),
        JobId([0; 32]),
        0,
        PayloadKind::Gradient,
        &values,
    )
    .unwrap();
    frame.to_vec()
}

fn trainers(n: usize) -> Vec<Box<dyn Trainer>> {
    (0..n)
        .map(|i| {
            Box::new(LinearRegression::new(DIM, 1, i as u64, 2).with_learning_rate(1e-3))
                as Box<dyn Trainer>
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_push_and_floor_complete_every_round() {
    let (n, rounds) = (4, 5);
    let frame = frame();
    for work in [false, true] {
        let t = if work { trainers(n) } else { Vec::new() };
        let runs = baseline::push_rounds_with(n, &frame, rounds, TIMEOUT, t)
            .await
            .unwrap();
        assert_eq!(runs.len(), n, "one result per swarm (work: {work})");
        for (lat, bytes) in &runs {
            assert_eq!(lat.len(), rounds);
            // n − 1 frames a round, plus the one-byte acks it answered.
            assert_eq!(*bytes, ((n - 1) * frame.len() + (n - 1)) as u64);
        }
    }
}

/// A trainer of dimension DIM whose every gradient is `self.0`: the floor
/// must refuse gradients that are not finite (it checks what it receives
/// as a node does) or not DIM long, with an error instead of averaging.
struct Fixed(Vec<f32>);

impl Trainer for Fixed {
    fn dim(&self) -> usize {
        DIM
    }
    fn gradient(&mut self, _round: u64) -> Result<(Option<f32>, Vec<f32>), TrainerError> {
        Ok((None, self.0.clone()))
    }
    fn apply(&mut self, _update: &[f32], _round: u64) -> Result<(), TrainerError> {
        Ok(())
    }
    fn parameters(&self) -> Result<Vec<f32>, TrainerError> {
        Ok(vec![0.0; DIM])
    }
    fn set_parameters(&mut self, _params: &[f32]) -> Result<(), TrainerError> {
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn floor_refuses_a_gradient_of_the_wrong_length() {
    let bad: Vec<Box<dyn Trainer>> = (0..3)
        .map(|_| Box::new(Fixed(vec![0.5; DIM - 1])) as _)
        .collect();
    let e = baseline::push_rounds_with(3, &frame(), 2, TIMEOUT, bad)
        .await
        .unwrap_err();
    assert!(e.to_string().contains("a gradient of 999 values"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn floor_refuses_bad_set_ups_and_bad_payloads() {
    let frame = frame();
    // One trainer per swarm, each with a payload that fits the frame.
    let e = baseline::push_rounds_with(3, &frame, 2, TIMEOUT, trainers(2))
        .await
        .unwrap_err();
    assert!(e.to_string().contains("one trainer per swarm"), "{e}");
    let big: Vec<Box<dyn Trainer>> = (0..3)
        .map(|i| Box::new(LinearRegression::new(DIM * 2, 1, i, 2)) as Box<dyn Trainer>)
        .collect();
    assert!(
        baseline::push_rounds_with(3, &frame, 2, TIMEOUT, big)
            .await
            .is_err()
    );
    // Non-finite payloads end the run with an error, well before the
    // timeout.
    let bad: Vec<Box<dyn Trainer>> = (0..3)
        .map(|_| Box::new(Fixed(vec![f32::NAN; DIM])) as _)
        .collect();
    let started = std::time::Instant::now();
    let e = baseline::push_rounds_with(3, &frame, 2, TIMEOUT, bad)
        .await
        .unwrap_err();
    assert!(e.to_string().contains("not finite"), "{e}");
    assert!(started.elapsed() < TIMEOUT);
}
