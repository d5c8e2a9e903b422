// shiftsim reference RTL -- accumulator register with WRAP or SAT (SPEC 2 and 5.1).
//
//     acc <= OVERFLOW((first ? bias : acc) + din)
//
// OVERFLOW is two's complement wrap (SAT = 0) or a clamp to [-2^(ACC_BITS-1), 2^(ACC_BITS-1)-1]
// (SAT = 1). ovf is 1 when OVERFLOW changed the value (every event is counted by shiftsim);
// ovf_any is sticky over one output (cleared by first).
module accumulator #(
    parameter integer ACC_BITS = 32,
    parameter integer IN_BITS  = 12,
    parameter integer SAT      = 0,
    parameter integer SW       = (ACC_BITS > IN_BITS ? ACC_BITS : IN_BITS) + 1
) (
    input  wire                clk,
    input  wire                en,
    input  wire                first,
    input  wire [ACC_BITS-1:0] bias,
    input  wire [IN_BITS-1:0]  din,
    output reg  [ACC_BITS-1:0] acc,
    output reg                 ovf,
    output reg                 ovf_any
);
    localparam [SW-1:0] MAXV = {{(SW-ACC_BITS+1){1'b0}}, {(ACC_BITS-1){1'b1}}};
    localparam [SW-1:0] MINV = {{(SW-ACC_BITS+1){1'b1}}, {(ACC_BITS-1){1'b0}}};

    wire signed [ACC_BITS-1:0] base = first ? bias : acc;
    wire signed [SW-1:0]       sum  = $signed(base) + $signed(din);   // exact
    wire                       hi   = sum > $signed(MAXV);
    wire                       lo   = sum < $signed(MINV);
    wire        [ACC_BITS-1:0] fitted = (SAT != 0 && hi) ? MAXV[ACC_BITS-1:0]
                                      : (SAT != 0 && lo) ? MINV[ACC_BITS-1:0]
                                      : sum[ACC_BITS-1:0];            // WRAP: keep the LSBs

    always @(posedge clk) begin
        if (en) begin
            acc     <= fitted;
            ovf     <= hi | lo;
            ovf_any <= (first ? 1'b0 : ovf_any) | hi | lo;
        end
    end
endmodule
