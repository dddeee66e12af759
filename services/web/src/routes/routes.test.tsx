import { screen, waitFor } from "@testing-library/react";
import userEvent from "@testing-library/user-event";
import { describe, expect, it, vi } from "vitest";
import { Route, Routes } from "react-router-dom";
import { ApiError } from "../api/client";
import type { Api } from "../api/endpoints";
import { renderWithApp } from "../test/render";
import AdminLayout from "./admin/AdminLayout";
import Search from "./Search";

describe("Search page", () => {
  it("shows a clear message when search is down", async () => {
    const api: Partial<Api> = {
      search: vi.fn(async () => {
        throw new ApiError(503, "unavailable", "product search is unavailable: Postgres unreachable");
      }),
    };
    renderWithApp(<Routes><Route path="/search" element={<Search />} /></Routes>, api, { route: "/search?q=ketle" });
    expect(await screen.findByRole("alert")).toHaveTextContent("Postgres unreachable");
  });
});

describe("Admin login", () => {
  it("keeps the admin key in sessionStorage only after the API accepted it", async () => {
    const campaigns = vi
      .fn()
      .mockRejectedValueOnce(new ApiError(401, "unauthorized", "X-API-Key: unknown key"))
      .mockResolvedValueOnce({ campaigns: [] });
    renderWithApp(
      <Routes>
        <Route path="/admin" element={<AdminLayout />}>
          <Route index element={<p>console home</p>} />
        </Route>
      </Routes>,
      { campaigns } as Partial<Api>,
      { route: "/admin" },
    );
    const input = screen.getByLabelText("Admin API key");
    await userEvent.type(input, "wrong");
    await userEvent.click(screen.getByRole("button", { name: "Log in" }));
    expect(await screen.findByRole("alert")).toHaveTextContent("unknown key");
    expect(sessionStorage.getItem("streamrec.adminKey")).toBeNull();
    await userEvent.clear(input);
    await userEvent.type(input, "right");
    await userEvent.click(screen.getByRole("button", { name: "Log in" }));
    await waitFor(() => expect(screen.getByText("console home")).toBeInTheDocument());
    expect(sessionStorage.getItem("streamrec.adminKey")).toBe("right");
    expect(localStorage.getItem("streamrec.adminKey")).toBeNull();
  });
});
