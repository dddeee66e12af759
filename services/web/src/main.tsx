import { createRoot } from "react-dom/client";
import App from "./App";
import { createApi } from "./api/endpoints";
import { loadConfig } from "./config";
import "./styles.css";

const root = createRoot(document.getElementById("root")!);

loadConfig()
  .then((config) => root.render(<App config={config} api={createApi(config)} />))
  .catch((err: unknown) => {
    root.render(
      <main id="main" className="login">
        <h1>streamrec shop</h1>
        <p role="alert" className="error">
          The app could not start: {err instanceof Error ? err.message : String(err)}. Is
          /config.json served next to the bundle?
        </p>
      </main>,
    );
  });
