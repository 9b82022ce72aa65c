package main

import (
	"errors"
	"io"
	"net"
	"sync"
	"time"
)

// delayProxy forwards loopback TCP connections to an sshd, delivering
// every chunk of bytes, in each direction, a fixed time after it arrived
// (half the round-trip time): a userspace stand-in for tc netem, which
// this kernel lacks. Bandwidth and pipelining are not limited: a chunk
// does not wait for the one before it beyond its own delay. The TCP
// connect itself is not delayed (the proxy accepts at once), for every
// method alike.
//
// It also records, per connection, the order in which chunks came from
// each side, to count request-response turns.
type delayProxy struct {
	Addr   string
	target string
	oneWay time.Duration
	ln     net.Listener
	wg     sync.WaitGroup

	mu    sync.Mutex
	conns map[net.Conn]bool
	done  []*trace // traces of finished connections
}

// trace is the sequence of chunk directions on one connection.
type trace struct {
	mu     sync.Mutex
	client []bool // true: from the client
}

func (t *trace) add(fromClient bool) {
	t.mu.Lock()
	t.client = append(t.client, fromClient)
	t.mu.Unlock()
}

// turns counts the request-response turns of a connection: how many
// times data from the server followed data from the client (each one is
// a wait of one round trip, unless both sides were sending anyway).
func (t *trace) turns() int {
	n := 0
	for i := 1; i < len(t.client); i++ {
		if t.client[i-1] && !t.client[i] {
			n++
		}
	}
	return n
}

func newDelayProxy(target string, rtt time.Duration) (*delayProxy, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	p := &delayProxy{Addr: ln.Addr().String(), target: target, oneWay: rtt / 2, ln: ln, conns: map[net.Conn]bool{}}
	p.wg.Add(1)
	go p.serve()
	return p, nil
}

// take returns the traces of the connections finished since the last call.
func (p *delayProxy) take() []*trace {
	p.mu.Lock()
	defer p.mu.Unlock()
	t := p.done
	p.done = nil
	return t
}

func (p *delayProxy) Close() error {
	err := p.ln.Close()
	p.mu.Lock()
	for c := range p.conns {
		c.Close()
	}
	p.mu.Unlock()
	p.wg.Wait()
	return err
}

func (p *delayProxy) track(c net.Conn, on bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if on {
		p.conns[c] = true
	} else {
		delete(p.conns, c)
	}
}

func (p *delayProxy) serve() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			p.forward(c.(*net.TCPConn))
		}()
	}
}

func (p *delayProxy) forward(client *net.TCPConn) {
	p.track(client, true)
	defer p.track(client, false)
	defer client.Close()
	sc, err := net.Dial("tcp", p.target)
	if err != nil {
		return
	}
	server := sc.(*net.TCPConn)
	p.track(server, true)
	defer p.track(server, false)
	defer server.Close()
	client.SetNoDelay(true)
	server.SetNoDelay(true)
	t := &trace{}
	var wg sync.WaitGroup
	wg.Go(func() { p.pipe(client, server, t, true) })
	wg.Go(func() { p.pipe(server, client, t, false) })
	wg.Wait()
	p.mu.Lock()
	p.done = append(p.done, t)
	p.mu.Unlock()
}

type chunk struct {
	due  time.Time
	data []byte
}

// pipe copies src to dst, each chunk oneWay after it was read; at the
// end of src it half-closes dst once everything is delivered.
func (p *delayProxy) pipe(src, dst *net.TCPConn, t *trace, fromClient bool) {
	q := make(chan chunk, 4096)
	var wg sync.WaitGroup
	wg.Go(func() {
		failed := false
		for c := range q {
			if failed {
				continue
			}
			time.Sleep(time.Until(c.due))
			if _, err := dst.Write(c.data); err != nil {
				failed = true
				src.Close()
			}
		}
		if !failed {
			dst.CloseWrite()
		}
	})
	for {
		buf := make([]byte, 32<<10)
		n, err := src.Read(buf)
		if n > 0 {
			t.add(fromClient)
			q <- chunk{due: time.Now().Add(p.oneWay), data: buf[:n]}
		}
		if err != nil {
			if !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) {
				dst.Close()
			}
			break
		}
	}
	close(q)
	wg.Wait()
}
