package loadgen

import (
	"context"
	"os"
	"testing"
	"time"
)

func TestDisk(t *testing.T) {
	dir := t.TempDir()
	res, err := Disk(context.Background(), dir, 50, 10*time.Second, 0)
	if err != nil {
		t.Fatal(err)
	}
	if res.Sent != 50 || res.Latency == nil || res.Latency.Samples != 50 {
		t.Fatalf("bounded by 50 messages: sent %d, latency %+v", res.Sent, res.Latency)
	}
	if left, _ := os.ReadDir(dir); len(left) != 0 {
		t.Fatalf("left %d files behind", len(left))
	}
	// Paced at 100/s for 200 ms: about 20 commits, however fast the disk.
	res, err = Disk(context.Background(), dir, 1000, 200*time.Millisecond, 100)
	if err != nil {
		t.Fatal(err)
	}
	if res.Sent < 1 || res.Sent > 21 {
		t.Fatalf("paced at 100/s for 200 ms: %d commits", res.Sent)
	}
	if _, err := Disk(context.Background(), dir+"/missing/dir", 10, time.Second, 0); err == nil {
		t.Fatal("no error for a directory that does not exist")
	}
}
