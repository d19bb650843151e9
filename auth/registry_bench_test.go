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

// The broker asks these on every publish, every delivery and every CONNECT
// with a username.
func BenchmarkRegistry(b *testing.B) {
	r := benchRegistry()
	for _, bc := range []struct {
		name string
		ask  func() error
	}{
		{"CanPublish", func() error { return r.CanPublish(57, 567, "") }},
		{"CanPublishWriteKey", func() error { return r.CanPublish(auth.Anonymous, 567, "W000000000000567") }},
		{"CanSubscribe", func() error { return r.CanSubscribe(57, 567, "") }},
		{"Authenticate", func() error {
			_, err := r.Authenticate("client57", "client57", "password57")
			return err
		}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if err := bc.ask(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
