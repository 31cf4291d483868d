"""HTTP/1.1 on asyncio protocols with httptools: body streams, server and client sides."""
