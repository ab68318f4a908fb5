package lag

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/IBM/sarama"
	"golang.org/x/sync/singleflight"
)

// ClientCache shares one sarama client per Kafka cluster and identity
// (bootstrap servers, protocol settings and credentials) among the
// pipelines that use it, and closes a client once nobody has used it for
// IdleTimeout.
type ClientCache struct {
	// IdleTimeout is how long an unused client stays open (default 5m).
	IdleTimeout time.Duration
	// NewClient creates a client; sarama.NewClient when nil.
	NewClient func(addrs []string, cfg *sarama.Config) (sarama.Client, error)
	// Now is replaceable in tests.
	Now func() time.Time

	mu      sync.Mutex
	clients map[string]*cachedClient
	// connecting makes concurrent Gets of one key share one connection
	// attempt: a hanging cluster gets one attempt at a time, not one per poll.
	connecting singleflight.Group
}

type cachedClient struct {
	client   sarama.Client
	refs     int
	lastUsed time.Time
}

// Key identifies a cluster and identity: brokers, the settings that shape
// the connection and a digest of the credentials (so a rotated password
// gets a new client).
func Key(brokers []string, settings string, credentials ...[]byte) string {
	h := sha256.New()
	fmt.Fprintf(h, "%s\x00%s\x00", strings.Join(brokers, ","), settings)
	for _, c := range credentials {
		fmt.Fprintf(h, "%d\x00", len(c))
		h.Write(c)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// Get returns the client for key, creating it from brokers and cfg when
// there is none (or the cached one was closed). Call release when done.
func (c *ClientCache) Get(key string, brokers []string, cfg *sarama.Config) (client sarama.Client, release func(), err error) {
	c.mu.Lock()
	if c.clients == nil {
		c.clients = map[string]*cachedClient{}
	}
	e := c.clients[key]
	if e != nil && e.client.Closed() {
		delete(c.clients, key)
		e = nil
	}
	if e == nil {
		// Connect outside the lock: an unreachable cluster must not hold
		// up the others.
		c.mu.Unlock()
		v, err, _ := c.connecting.Do(key, func() (any, error) {
			newClient := c.NewClient
			if newClient == nil {
				newClient = sarama.NewClient
			}
			cl, err := newClient(brokers, cfg)
			if err != nil {
				return nil, err
			}
			c.mu.Lock()
			defer c.mu.Unlock()
			if c.clients == nil {
				c.clients = map[string]*cachedClient{}
			}
			if other := c.clients[key]; other != nil && !other.client.Closed() {
				_ = cl.Close()
				return other, nil
			}
			e := &cachedClient{client: cl}
			c.clients[key] = e
			return e, nil
		})
		if err != nil {
			return nil, nil, err
		}
		e = v.(*cachedClient)
		c.mu.Lock()
	}
	e.refs++
	c.mu.Unlock()
	var once sync.Once
	return e.client, func() {
		once.Do(func() {
			c.mu.Lock()
			e.refs--
			e.lastUsed = c.now()
			c.mu.Unlock()
		})
	}, nil
}

// Invalidate closes and drops the client of key (after an error that
// suggests it is broken); the next Get creates a new one.
func (c *ClientCache) Invalidate(key string) {
	c.mu.Lock()
	e := c.clients[key]
	if e != nil && e.refs == 0 {
		delete(c.clients, key)
	} else {
		e = nil
	}
	c.mu.Unlock()
	if e != nil {
		_ = e.client.Close()
	}
}

// Sweep closes the clients unused for IdleTimeout. It returns how many are
// still open.
func (c *ClientCache) Sweep() int {
	idle := c.IdleTimeout
	if idle <= 0 {
		idle = 5 * time.Minute
	}
	now := c.now()
	var closing []sarama.Client
	c.mu.Lock()
	for k, e := range c.clients {
		if e.refs == 0 && now.Sub(e.lastUsed) >= idle {
			closing = append(closing, e.client)
			delete(c.clients, k)
		}
	}
	n := len(c.clients)
	c.mu.Unlock()
	for _, cl := range closing {
		_ = cl.Close()
	}
	return n
}

// Close closes every client.
func (c *ClientCache) Close() {
	c.mu.Lock()
	all := c.clients
	c.clients = nil
	c.mu.Unlock()
	for _, e := range all {
		_ = e.client.Close()
	}
}

func (c *ClientCache) now() time.Time {
	if c.Now != nil {
		return c.Now()
	}
	return time.Now()
}
