package client_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/go-logr/logr"

	"kafkasend.io/kafkasend/internal/demo"
	_ "kafkasend.io/kafkasend/internal/testutil/kafkatest" // quiets sarama's metrics
	"kafkasend.io/kafkasend/pkg/client"
)

// pipeline runs an embedded broker, an upstream and a portal for the
// examples, and returns a client configuration that reaches them.
func pipeline() (client.Config, func()) {
	env, err := demo.StartEnv(demo.EnvOptions{Slow: time.Second, Fast: time.Millisecond, RequestTopics: []string{"requests"}})
	if err != nil {
		panic(err)
	}
	if err := env.StartPortal(env.PortalConfig("requests", 10), logr.Discard()); err != nil {
		env.Close()
		panic(err)
	}
	return client.Config{Brokers: env.Brokers, RequestsTopic: "requests", ReplyTopic: demo.ReplyTopic, ReplyPartition: 0}, env.Close
}

// A Client as the transport of an http.Client: the URL's path and query
// make the job; the portal decides the host.
func ExampleTransport() {
	cfg, stop := pipeline()
	defer stop()

	c, err := client.New(cfg)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer c.Close()
	hc := &http.Client{Transport: &client.Transport{Client: c}, Timeout: 10 * time.Second}

	resp, err := hc.Post("kafkasend:///echo", "text/plain", strings.NewReader("hello over Kafka"))
	if err != nil {
		fmt.Println(err)
		return
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	fmt.Println(resp.Status)
	fmt.Println(string(body))
	// Output:
	// 200 OK
	// hello over Kafka
}

// Submit returns as soon as Kafka has the job; Await collects the answer
// later, in this process or, with the job ID kept, in another one.
func ExampleClient_Submit() {
	cfg, stop := pipeline()
	defer stop()

	c, err := client.New(cfg)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	req, _ := http.NewRequest(http.MethodGet, "/slow/report", nil)
	id, err := c.Submit(ctx, req)
	if err != nil {
		fmt.Println(err)
		return
	}
	// ... keep id, do other work ...
	resp, err := c.Await(ctx, id)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	fmt.Printf("%d %s", resp.StatusCode, body)
	// Output:
	// 200 ok /api/slow/report
}

// Error responses of the portal are typed errors.
func ExampleError() {
	cfg, stop := pipeline()
	defer stop()

	c, err := client.New(cfg)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer c.Close()

	req, _ := http.NewRequest(http.MethodGet, "/../admin", nil)
	_, err = c.Do(context.Background(), req)
	var ce *client.Error
	switch {
	case errors.Is(err, client.ErrRejected) && errors.As(err, &ce):
		fmt.Println("refused by the portal's policy:", ce.Kind)
	case errors.Is(err, client.ErrTimeout):
		fmt.Println("no answer in time")
	default:
		fmt.Println("unexpected:", err)
	}
	// Output:
	// refused by the portal's policy: rejected
}
