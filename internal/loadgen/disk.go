package loadgen

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/feedmq/feedmq/internal/datasync"
)

// Disk measures what bounds a durable broker's commit on the disk holding
// dir: a small record written in place and made durable through a
// datasync.Log (O_DIRECT|O_DSYNC where the file system has it, else a
// write and fdatasync), the way feedmq's write-ahead log commits a lone
// entry. At a rate (per
// second) it measures the latency of each commit; with rate 0, how many
// commits one writer gets done in a second. The run is bounded by
// messages and duration; the file it writes is removed afterwards.
func Disk(ctx context.Context, dir string, messages int64, duration time.Duration, rate float64) (*Result, error) {
	if duration <= 0 {
		return nil, errors.New("--duration must be positive")
	}
	if messages <= 0 {
		return nil, errors.New("--messages must be positive")
	}
	f, err := os.CreateTemp(dir, ".feedmq-bench-disk-*")
	if err != nil {
		return nil, fmt.Errorf("disk: %w", err)
	}
	defer os.Remove(f.Name())
	defer f.Close()
	// The records cycle through a region written once beforehand, so
	// that syncing them never has to grow the file, as in the log.
	const region, record = 1 << 20, 120
	if _, err := f.Write(make([]byte, region)); err != nil {
		return nil, fmt.Errorf("disk: %w", err)
	}
	if err := f.Sync(); err != nil {
		return nil, fmt.Errorf("disk: %w", err)
	}
	out := datasync.NewLog(f)
	defer out.Close()
	buf := make([]byte, record)
	for i := range buf {
		buf[i] = byte(i)
	}
	res := &Result{Scenario: "disk", Broker: "-", Addr: dir, Clients: 1}
	samples := make([]time.Duration, 0, min(messages, maxSamples))
	start := time.Now()
	end := start.Add(duration)
	var n int64
	for ; n < messages && ctx.Err() == nil; n++ {
		if rate > 0 {
			due := dueAt(start, n, rate)
			if due.After(end) {
				break
			}
			sleepUntil(due)
		} else if !time.Now().Before(end) {
			break
		}
		t := time.Now()
		if err := out.Write(buf, n*record%(region-record)); err != nil {
			return nil, fmt.Errorf("disk: %w", err)
		}
		if len(samples) < cap(samples) {
			samples = append(samples, time.Since(t))
		}
	}
	// After the run: a file system may refuse direct writes only when
	// they come (EINVAL), and the Log then goes through the page cache.
	res.Method = "write and fdatasync"
	if out.Direct() {
		res.Method = "O_DIRECT|O_DSYNC write"
	}
	secs := time.Since(start).Seconds()
	res.Sent, res.Acked = n, n
	res.Seconds = round3(secs)
	if secs > 0 {
		res.Rate = round3(float64(n) / secs)
		res.SentRate = res.Rate
	}
	res.Latency = Summarize(samples)
	return res, nil
}
