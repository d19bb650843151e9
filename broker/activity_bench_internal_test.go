package broker

import (
	"testing"
	"time"
)

// BenchmarkDevicePublished measures what an accepted publish pays for the
// device's last publish time. A device holds one connection, whose reader
// alone writes its record, so there is no contention to measure.
func BenchmarkDevicePublished(b *testing.B) {
	a, started := new(deviceActivity), time.Now()
	for b.Loop() {
		a.published(started)
	}
}
