// Package localserver runs a real tributary server binary on this machine,
// for tests, examples and local development: on a free loopback port, over
// a fresh SQLite file, healthy before it is handed out.
//
//	server, err := localserver.Start("", localserver.Options{})
//	if err != nil { ... }
//	defer server.Stop()
//	client, err := tributary.Dial(server.URL())
package localserver

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

// Options tune the server.
type Options struct {
	// HeartbeatIntervalMS and LeaseTimeoutMS shorten liveness for tests
	// (0: the server's defaults).
	HeartbeatIntervalMS, LeaseTimeoutMS int
	// DatabaseURL replaces the fresh SQLite file (for example a postgres://
	// URL, or a SQLite file to keep).
	DatabaseURL string
	// Args are extra `tributary serve` arguments.
	Args []string
	// Log receives the server's output (default: discarded).
	Log *os.File
}

// Server is a running tributary server.
type Server struct {
	binary   string
	addr     string
	database string
	dir      string
	ownsDir  bool
	options  Options
	cmd      *exec.Cmd
	exited   chan struct{}
}

// FindBinary returns the server binary: $TRIBUTARY_BIN, else
// <repo>/target/release/tributary, else <repo>/target/debug/tributary.
func FindBinary() (string, error) {
	if path := os.Getenv("TRIBUTARY_BIN"); path != "" {
		if _, err := os.Stat(path); err != nil {
			return "", fmt.Errorf("TRIBUTARY_BIN=%s: %w", path, err)
		}
		return path, nil
	}
	root, err := repoRoot()
	if err != nil {
		return "", err
	}
	for _, profile := range []string{"release", "debug"} {
		path := filepath.Join(root, "target", profile, "tributary")
		if _, err := os.Stat(path); err == nil {
			return path, nil
		}
	}
	return "", fmt.Errorf("no tributary server binary: set TRIBUTARY_BIN or build it into %s/target/{release,debug}", root)
}

// repoRoot is the repository holding this package's source.
func repoRoot() (string, error) {
	_, file, _, ok := runtime.Caller(0)
	if ok {
		// client-sdk/go/localserver/localserver.go
		root := filepath.Join(filepath.Dir(file), "..", "..", "..")
		if _, err := os.Stat(filepath.Join(root, "proto")); err == nil {
			return filepath.Abs(root)
		}
	}
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "proto", "tributary")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("cannot find the repository root (a directory with proto/tributary)")
		}
		dir = parent
	}
}

// Start runs a server over a new SQLite file in dir (a fresh temporary
// directory when empty) and waits until it is healthy.
func Start(dir string, options Options) (*Server, error) {
	binary, err := FindBinary()
	if err != nil {
		return nil, err
	}
	ownsDir := dir == ""
	if ownsDir {
		dir, err = os.MkdirTemp("", "tributary-local-")
		if err != nil {
			return nil, err
		}
	}
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	server := &Server{
		binary:   binary,
		addr:     net.JoinHostPort("127.0.0.1", strconv.Itoa(port)),
		database: filepath.Join(dir, "tributary.db"),
		dir:      dir,
		ownsDir:  ownsDir,
		options:  options,
	}
	if err := server.start(); err != nil {
		return nil, err
	}
	return server, nil
}

func freePort() (int, error) {
	listener, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer listener.Close()
	return listener.Addr().(*net.TCPAddr).Port, nil
}

func (s *Server) start() error {
	database := "sqlite://" + s.database
	if s.options.DatabaseURL != "" {
		database = s.options.DatabaseURL
	}
	args := []string{"serve", "--listen", s.addr, "--database-url", database, "--log-level", "warn"}
	if s.options.HeartbeatIntervalMS > 0 {
		args = append(args, "--heartbeat-interval-ms", strconv.Itoa(s.options.HeartbeatIntervalMS))
	}
	if s.options.LeaseTimeoutMS > 0 {
		args = append(args, "--lease-timeout-ms", strconv.Itoa(s.options.LeaseTimeoutMS))
	}
	args = append(args, s.options.Args...)
	cmd := exec.Command(s.binary, args...)
	if s.options.Log != nil {
		cmd.Stdout, cmd.Stderr = s.options.Log, s.options.Log
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("cannot start %s: %w", s.binary, err)
	}
	s.cmd = cmd
	s.exited = make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(s.exited)
	}()
	return s.waitHealthy(60 * time.Second)
}

// waitHealthy polls grpc.health.v1 until the server says SERVING.
func (s *Server) waitHealthy(limit time.Duration) error {
	conn, err := grpc.NewClient(s.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return err
	}
	defer conn.Close()
	health := healthpb.NewHealthClient(conn)
	deadline := time.Now().Add(limit)
	for {
		select {
		case <-s.exited:
			return fmt.Errorf("the server exited while starting (%s)", s.cmd.ProcessState)
		default:
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		response, err := health.Check(ctx, &healthpb.HealthCheckRequest{})
		cancel()
		if err == nil && response.GetStatus() == healthpb.HealthCheckResponse_SERVING {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the server at %s was not healthy within %s: %v", s.addr, limit, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// URL is the server's address as the SDK takes it.
func (s *Server) URL() string { return "http://" + s.addr }

// Kill stops the server at once (SIGKILL), as a crash would.
func (s *Server) Kill() {
	if s.cmd != nil && s.cmd.Process != nil {
		_ = s.cmd.Process.Kill()
		<-s.exited
	}
}

// Pause stops the server's process (SIGSTOP): it keeps its sockets but
// answers nothing, as a hung server would.
func (s *Server) Pause() error { return s.cmd.Process.Signal(syscall.SIGSTOP) }

// Resume continues a paused server (SIGCONT).
func (s *Server) Resume() error { return s.cmd.Process.Signal(syscall.SIGCONT) }

// Restart kills the server and starts it again on the same port and
// database.
func (s *Server) Restart() error {
	s.Kill()
	return s.start()
}

// Stop stops the server gracefully (SIGTERM, then SIGKILL after 10 s) and
// removes its directory when Start made it.
func (s *Server) Stop() {
	if s.cmd != nil && s.cmd.Process != nil {
		_ = s.Resume()
		_ = s.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-s.exited:
		case <-time.After(10 * time.Second):
			s.Kill()
		}
	}
	if s.ownsDir {
		_ = os.RemoveAll(s.dir)
	}
}
