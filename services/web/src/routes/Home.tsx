import { QueryStrip } from "../components/ProductStrip";
import { useRecommendations, useTrending } from "../hooks/api";
import { useApp } from "../state/AppContext";

export default function Home() {
  const { shopper } = useApp();
  const recs = useRecommendations(shopper);
  const trending = useTrending();
  return (
    <>
      <h1>Hello, {shopper}</h1>
      <QueryStrip
        query={recs}
        what="recommendations"
        title="Recommended for you"
        testId="recommended"
        strategy={(r) => (r.experiment ? `${r.strategy} · ${r.experiment.name}/${r.experiment.variant}` : r.strategy)}
      />
      <QueryStrip query={trending} what="trending products" title="Trending now" testId="trending" />
    </>
  );
}
