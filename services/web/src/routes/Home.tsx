import { ProductStrip } from "../components/ProductStrip";
import { QueryState } from "../components/QueryState";
import { useRecommendations, useTrending } from "../hooks/api";
import { useApp } from "../state/AppContext";

export default function Home() {
  const { shopper } = useApp();
  const recs = useRecommendations(shopper);
  const trending = useTrending();
  return (
    <>
      <h1>Hello, {shopper}</h1>
      <QueryState query={recs} what="recommendations">
        {(r) => (
          <ProductStrip
            title="Recommended for you"
            testId="recommended"
            items={r.items}
            algorithm={r.algorithm}
            strategy={r.experiment ? `${r.strategy} · ${r.experiment.name}/${r.experiment.variant}` : r.strategy}
            modelVersion={r.model_version}
            recId={r.rec_id}
          />
        )}
      </QueryState>
      <QueryState query={trending} what="trending products">
        {(t) => <ProductStrip title="Trending now" testId="trending" items={t.items} strategy={t.strategy} />}
      </QueryState>
    </>
  );
}
