package channels_test

import (
	"fmt"
	"time"

	"github.com/feedmq/feedmq/channels"
)

func ExampleParsePayload() {
	ch := &channels.Channel{ID: 7, Fields: channels.DefaultFields()}
	ch.Fields[2] = "" // field3 is disabled

	topic, _ := channels.ParseTopic("channels/7/publish")
	e, err := channels.ParsePayload(ch, topic.Field, []byte("field1=23.5&field2=&lat=52.5163&long=13.3777&status=door+open%21"), channels.DefaultLimits())
	if err != nil {
		fmt.Println(err)
		return
	}
	// The store assigns the entry_id and, unless the payload set it, created_at.
	e.ID = 1
	e.CreatedAt = time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)
	fmt.Printf("%s\n", e.AppendJSON(nil))

	// A disabled field is dropped; only disabled fields are refused.
	e, _ = channels.ParsePayload(ch, 0, []byte("field1=1&field3=1"), channels.DefaultLimits())
	v, ok := e.Field(3)
	fmt.Printf("field3 %q %v\n", v, ok)
	_, err = channels.ParsePayload(ch, 0, []byte("field3=1"), channels.DefaultLimits())
	fmt.Println(err)
	// Output:
	// {"channel_id":7,"created_at":"2026-11-22T10:00:00Z","entry_id":1,"field1":"23.5","field2":null,"field3":null,"field4":null,"field5":null,"field6":null,"field7":null,"field8":null,"latitude":"52.5163","longitude":"13.3777","elevation":null,"status":"door open!"}
	// field3 "" false
	// payload sets only fields not enabled on channel 7 (field3): enable them or write to an enabled field
}
