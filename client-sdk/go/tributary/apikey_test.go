package tributary

import (
	"testing"

	pb "github.com/tributary-dev/tributary/client-sdk/go/gen/tributary/v1"
	"github.com/tributary-dev/tributary/client-sdk/go/localserver"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

const adminKey = "go-sdk-bootstrap-admin-key-0123456789abcdef"

func TestAPIKeysAreSentByTheClientAndTheWorker(t *testing.T) {
	server := startServer(t, localserver.Options{Args: []string{"--admin-key", adminKey}})
	ctx := testContext(t)
	createKey := func(namespace, role string) string {
		conn, err := grpc.NewClient(server.URL()[len("http://"):], grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		response, err := pb.NewKeyServiceClient(conn).CreateKey(
			metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+adminKey),
			&pb.CreateKeyRequest{Namespace: namespace, Role: role, Label: "go test"},
		)
		if err != nil {
			t.Fatal(err)
		}
		return response.GetSecret()
	}

	anonymous := dialClient(t, server.URL())
	if _, err := anonymous.ListWorkflows(ctx, 0, ""); status.Code(err) != codes.Unauthenticated {
		t.Fatalf("without a key: %v", err)
	}
	clientKey, executorKey := createKey("finance", "client"), createKey("finance", "executor")
	client := dialClient(t, server.URL(), WithNamespace("finance"), WithAPIKey(clientKey))
	workflow := NewWorkflow("keyed", Task{ID: "only", Run: noop})
	if _, err := client.RegisterWorkflow(ctx, workflow); err != nil {
		t.Fatal(err)
	}
	startWorker(t, server.URL(), WorkerOptions{Namespace: "finance", APIKey: executorKey}, workflow)
	started, err := client.StartRun(ctx, "keyed", map[string]any{})
	if err != nil {
		t.Fatal(err)
	}
	run, err := client.Wait(ctx, started.RunID)
	if err != nil || run.Status != RunSucceeded {
		t.Fatalf("run = %+v, %v", run, err)
	}
	elsewhere := dialClient(t, server.URL(), WithNamespace("default"), WithAPIKey(clientKey))
	if _, err := elsewhere.ListWorkflows(ctx, 0, ""); status.Code(err) != codes.PermissionDenied {
		t.Fatalf("another namespace: %v", err)
	}
}
