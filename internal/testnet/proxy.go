package testnet

import (
	"errors"
	"io"
	"net"
	"sync"
	"sync/atomic"
)

// Proxy forwards loopback TCP connections to a target. It can cut each
// connection once the client has sent a number of bytes, or hold every
// connection open without forwarding or answering anything (a host that
// accepts TCP but never speaks).
type Proxy struct {
	Addr string // where it listens

	target string
	ln     net.Listener
	wg     sync.WaitGroup

	mu    sync.Mutex
	conns map[net.Conn]bool

	cutAfter  atomic.Int64 // client bytes after which a connection is cut; 0: never
	blackhole atomic.Bool
	sent      atomic.Int64 // client bytes forwarded, all connections
	cuts      atomic.Int64 // connections cut
}

// NewProxy listens on a free loopback port and forwards to target.
func NewProxy(target string) (*Proxy, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	p := &Proxy{Addr: ln.Addr().String(), target: target, ln: ln, conns: map[net.Conn]bool{}}
	p.wg.Add(1)
	go p.serve()
	return p, nil
}

// CutAfter makes connections accepted from now on drop (both ways, at
// once) when the client has sent n bytes; 0 turns cutting off.
func (p *Proxy) CutAfter(n int64) { p.cutAfter.Store(n) }

// Blackhole makes connections accepted from now on hang: accepted, never
// forwarded, never answered, closed only by the client or Close.
func (p *Proxy) Blackhole(on bool) { p.blackhole.Store(on) }

// Sent is how many bytes clients have sent through the proxy.
func (p *Proxy) Sent() int64 { return p.sent.Load() }

// Cuts is how many connections the proxy has cut.
func (p *Proxy) Cuts() int64 { return p.cuts.Load() }

// ResetCount sets Sent back to zero.
func (p *Proxy) ResetCount() { p.sent.Store(0) }

// Close stops listening, closes every connection and waits for the
// forwarding goroutines.
func (p *Proxy) Close() error {
	err := p.ln.Close()
	p.mu.Lock()
	for c := range p.conns {
		c.Close()
	}
	p.mu.Unlock()
	p.wg.Wait()
	return err
}

func (p *Proxy) track(c net.Conn, on bool) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if on && p.conns == nil {
		return false
	}
	if on {
		p.conns[c] = true
	} else {
		delete(p.conns, c)
	}
	return true
}

func (p *Proxy) serve() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.track(c, true)
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			defer p.track(c, false)
			defer c.Close()
			if p.blackhole.Load() {
				// Read and drop until the client gives up.
				io.Copy(io.Discard, c)
				return
			}
			p.forward(c, p.cutAfter.Load())
		}()
	}
}

func (p *Proxy) forward(client net.Conn, cutAfter int64) {
	server, err := net.Dial("tcp", p.target)
	if err != nil {
		return
	}
	p.track(server, true)
	defer p.track(server, false)
	defer server.Close()
	cut := func() {
		// RST rather than FIN: the peers see the connection die.
		if tc, ok := client.(*net.TCPConn); ok {
			tc.SetLinger(0)
		}
		if tc, ok := server.(*net.TCPConn); ok {
			tc.SetLinger(0)
		}
		client.Close()
		server.Close()
	}
	done := make(chan struct{}, 2)
	go func() {
		defer func() { done <- struct{}{} }()
		var n int64
		buf := make([]byte, 4096)
		for {
			k, err := client.Read(buf)
			if k > 0 {
				chunk := buf[:k]
				if cutAfter > 0 && n+int64(k) >= cutAfter {
					chunk = buf[:cutAfter-n]
					server.Write(chunk)
					p.sent.Add(int64(len(chunk)))
					p.cuts.Add(1)
					cut()
					return
				}
				if _, werr := server.Write(chunk); werr != nil {
					return
				}
				n += int64(k)
				p.sent.Add(int64(k))
			}
			if err != nil {
				if !errors.Is(err, net.ErrClosed) {
					server.(*net.TCPConn).CloseWrite()
				}
				return
			}
		}
	}()
	go func() {
		defer func() { done <- struct{}{} }()
		io.Copy(client, server)
		client.(*net.TCPConn).CloseWrite()
	}()
	<-done
	<-done
}
