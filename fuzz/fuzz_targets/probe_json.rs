//! ffprobe's JSON comes from files anyone can upload: parsing it must never panic, and what it
//! accepts must satisfy the invariants the ladder planner relies on.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(probe) = reel::transcode::probe::parse(data) {
        let (width, height) = probe.video.display_size();
        assert!(width > 0 && height > 0);
        assert!(probe.duration >= 0.0 && probe.duration.is_finite());
        assert!(probe.video.rotation % 90 == 0 && probe.video.rotation < 360);
        let ladder = reel::transcode::ladder::parse_ladder("1080:5000,720:2800,480:1400,360:800,240:400")
            .expect("default ladder");
        for rung in reel::transcode::ladder::plan(width, height, &ladder) {
            assert!(rung.width % 2 == 0 && rung.height % 2 == 0);
            assert!(rung.width <= width.max(2) && rung.height <= height.max(2));
        }
    }
});
