"""Web security: CORS allow-list, CSP and security headers, RFC 9457 problem details."""

from __future__ import annotations

from tests.conftest import Api


async def test_security_headers_on_client_page_and_api(api: Api) -> None:
    for path in ("/", "/api/me", "/healthz"):
        resp = await api.client.get(path)
        csp = resp.headers["Content-Security-Policy"]
        assert "default-src 'none'" in csp and "script-src 'self'" in csp
        assert "unsafe-inline" not in csp and "unsafe-eval" not in csp
        assert "frame-ancestors 'none'" in csp and "media-src 'self' blob:" in csp
        assert resp.headers["X-Content-Type-Options"] == "nosniff"
        assert resp.headers["Referrer-Policy"] == "no-referrer"
        assert "Set-Cookie" not in resp.headers


async def test_cors_allow_list(api: Api) -> None:
    pre = await api.client.options(
        "/api/login",
        headers={
            "Origin": "https://allowed.example",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type, authorization",
        },
    )
    assert pre.status == 204
    assert pre.headers["Access-Control-Allow-Origin"] == "https://allowed.example"
    assert "Authorization" in pre.headers["Access-Control-Allow-Headers"]
    assert "Access-Control-Allow-Credentials" not in pre.headers
    bad = await api.client.options(
        "/api/login",
        headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"},
    )
    assert bad.status == 403 and (await bad.json())["code"] == "origin_not_allowed"
    assert "Access-Control-Allow-Origin" not in bad.headers
    simple = await api.client.get("/api/me", headers={"Origin": "https://allowed.example"})
    assert simple.headers["Access-Control-Allow-Origin"] == "https://allowed.example"
    other = await api.client.get("/api/me", headers={"Origin": "https://evil.example"})
    assert "Access-Control-Allow-Origin" not in other.headers


async def test_problem_details_for_http_errors(api: Api) -> None:
    missing = await api.client.get("/api/nothing-here")
    assert missing.status == 404 and missing.content_type == "application/problem+json"
    assert (await missing.json())["code"] == "not_found"
    wrong_method = await api.client.put("/api/login")
    assert (
        wrong_method.status == 405 and (await wrong_method.json())["code"] == "method_not_allowed"
    )
    assert "Allow" in wrong_method.headers
    huge = await api.client.post("/api/login", data=b"{" + b" " * (300 * 1024) + b"}")
    assert huge.status == 413 and (await huge.json())["code"] == "payload_too_large"
    malformed = await api.client.post("/api/login", data=b"{not json")
    body = await malformed.json()
    assert malformed.status == 400 and body["code"] == "malformed_json"
    assert set(body) >= {"type", "title", "status", "detail", "code"}
    invalid = await api.client.post("/api/login", json={"email": 5})
    body = await invalid.json()
    assert invalid.status == 422 and body["code"] == "validation_failed"
    assert all(set(err) == {"loc", "msg", "type"} for err in body["errors"])
