import { createServer, type IncomingMessage } from 'node:http';
import type { AddressInfo } from 'node:net';
import { LexicalOptions, LexicalVectorizer } from '../../src/embedders/lexical.js';

// A tiny OpenAI-compatible /v1/embeddings server for the remote embedder's tests. Vectors are the
// lexical embedder's, scaled by 3 so that the client's normalisation is exercised.

export interface StubBehaviour {
  /** Answer vectors of this length instead of `dim`. */
  answerDim?: number;
  status?: number;
  delayMs?: number;
  /** Answer this raw body instead. */
  rawBody?: string;
  base64?: boolean;
  /** Answer the embeddings in reverse order, with their indexes. */
  reverse?: boolean;
}

export interface StubServer {
  baseURL: string;
  requests: { auth: string | undefined; body: { model?: string; input?: string[]; dimensions?: number } }[];
  behaviour: StubBehaviour;
  close(): Promise<void>;
}

const readBody = async (req: IncomingMessage): Promise<string> => {
  let s = '';
  for await (const chunk of req) s += String(chunk);
  return s;
};

export async function startStubEmbeddings(dim: number): Promise<StubServer> {
  const requests: StubServer['requests'] = [];
  const server = createServer((req, res) => {
    const behaviour = stub.behaviour; // read per request: tests swap it between calls
    void (async () => {
      const raw = await readBody(req);
      const body = JSON.parse(raw) as { model?: string; input?: string[]; dimensions?: number };
      requests.push({ auth: req.headers.authorization, body });
      if (behaviour.delayMs) await new Promise((r) => setTimeout(r, behaviour.delayMs));
      if (res.destroyed) return;
      if (req.url !== '/v1/embeddings') {
        res.writeHead(404).end('{"error":{"message":"no route"}}');
        return;
      }
      const d = behaviour.answerDim ?? dim;
      const lex = new LexicalVectorizer(LexicalOptions.parse({ type: 'lexical', dim: d }));
      const data = (body.input ?? []).map((t, index) => {
        const v = lex.vectorize(t).map((x) => x * 3);
        return { object: 'embedding', index, embedding: behaviour.base64 ? Buffer.from(v.buffer).toString('base64') : Array.from(v) };
      });
      if (behaviour.reverse) data.reverse();
      res.writeHead(behaviour.status ?? 200, { 'content-type': 'application/json' });
      res.end(behaviour.rawBody ?? JSON.stringify({ object: 'list', data, model: body.model }));
    })();
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const { port } = server.address() as AddressInfo;
  const stub: StubServer = {
    baseURL: `http://127.0.0.1:${port}/v1`,
    requests,
    behaviour: {},
    close: () =>
      new Promise<void>((r) => {
        server.closeAllConnections();
        server.close(() => r());
      }),
  };
  return stub;
}
