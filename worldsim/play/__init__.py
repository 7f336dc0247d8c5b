"""worldsim.play: walk through a model's imagined world in a browser (`worldsim play`), and the WebSocket gateway that
serves the session API to browsers, WebXR pages and engines (bridges/PROTOCOL.md, "WebSocket gateway")."""
