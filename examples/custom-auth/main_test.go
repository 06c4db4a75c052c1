package main

func Example() {
	main()
	// Output:
	// app session ann via STANDARD
	// ops saw users.ann.status: online
	// nats: permissions violation: Permissions Violation for Publish to "users.bob.status"
	// nats: Authorization Violation
	// app session ann via WEBSOCKET (upgrade header)
	// ops saw users.ann.status: on the web
	// upgrade with a stolen token: 401 Unauthorized
}
