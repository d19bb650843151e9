package auth_test

import (
	"fmt"
	"testing"

	"github.com/feedmq/feedmq/auth"
)

// benchRegistry holds the default limits' worth of rights: 100 devices,
// each granted 10 of 1000 channels.
func benchRegistry() *auth.Registry {
	r := auth.NewRegistry()
	for ch := uint64(1); ch <= 1000; ch++ {
		r.PutChannel(testChannel(ch, ch%2 == 0, fmt.Sprintf("W%015d", ch), fmt.Sprintf("R%015d", ch)))
	}
	for id := uint64(1); id <= 100; id++ {
		var grants []auth.Grant
		for i := uint64(0); i < 10; i++ {
			grants = append(grants, auth.Grant{ChannelID: id*10 - i, Publish: true, Subscribe: true})
		}
		r.PutDevice(testDevice(id, grants...))
	}
	return r
}

// The broker asks these on every publish and every delivery.
func BenchmarkCanPublish(b *testing.B) {
	r := benchRegistry()
	b.ReportAllocs()
	for b.Loop() {
		if err := r.CanPublish(57, 567, ""); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkCanPublishWriteKey(b *testing.B) {
	r := benchRegistry()
	b.ReportAllocs()
	for b.Loop() {
		if err := r.CanPublish(auth.Anonymous, 567, "W000000000000567"); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkCanSubscribe(b *testing.B) {
	r := benchRegistry()
	b.ReportAllocs()
	for b.Loop() {
		if err := r.CanSubscribe(57, 567, ""); err != nil {
			b.Fatal(err)
		}
	}
}

// Authenticate runs on every CONNECT with a username.
func BenchmarkAuthenticate(b *testing.B) {
	r := benchRegistry()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := r.Authenticate("client57", "client57", "password57"); err != nil {
			b.Fatal(err)
		}
	}
}
